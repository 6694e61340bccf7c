//! Decision mode (docs/decision-mode.md) behind real front proxies: nginx `auth_request` and
//! Caddy `forward_auth` run as child processes in front of the gateway and an upstream; Envoy's
//! ext_authz HTTP requests (no Envoy binary installs here) are written byte for byte over a raw
//! TLS socket, from Envoy's documented behaviour. Every case checks what the client and the
//! upstream actually saw, and the audit line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::front_proxies::Front;
use crate::identity::SpiffeCa;
use crate::support::*;

const ACME: &str = "pcs_decide_acme_5b1e0c7d9f2a4e6b8c0d";
const REVOKED: &str = "pcs_decide_gone_0a9b8c7d6e5f4a3b2c1d";
const ACME_ID: &str = "spiffe://corp.example/partner/acme";
const PAYMENTS_ID: &str = "spiffe://corp.example/ns/payments/sa/batch";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Lab {
    pki: Pki,
    corp: SpiffeCa,
    other: SpiffeCa,
    up: Upstream,
    gw: portcullis::server::Running,
}

impl Lab {
    fn gw_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.gw.data_addr.port())
    }

    fn ca(&self) -> std::path::PathBuf {
        self.pki.path("ca.pem")
    }

    async fn revoke(&self, credential: &str) {
        let r = reqwest::Client::new()
            .post(format!(
                "http://{}/admin/v1/revocations",
                self.gw.admin_addr
            ))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"credential":"{credential}","reason":"offboarded"}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    /// One request over a fresh TLS connection from `from` (a loopback address), as written.
    async fn raw(&self, from: [u8; 4], request: &[u8]) -> String {
        self.raw_as(from, None, request).await
    }

    /// [`Lab::raw`], presenting the client certificate `cert` (PEM, key) when given.
    async fn raw_as(
        &self,
        from: [u8; 4],
        cert: Option<&(String, String)>,
        request: &[u8],
    ) -> String {
        use rustls_pki_types::pem::PemObject as _;
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::from((from, 0))).unwrap();
        let tcp = sock.connect(self.gw.data_addr).await.unwrap();
        let mut cfg = match cert {
            None => self.pki.client_config(),
            Some((c, k)) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in rustls_pki_types::CertificateDer::pem_slice_iter(
                    self.pki.ca.cert_pem().as_bytes(),
                ) {
                    roots.add(ca.unwrap()).unwrap();
                }
                let chain = rustls_pki_types::CertificateDer::pem_slice_iter(c.as_bytes())
                    .map(Result::unwrap)
                    .collect();
                let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap();
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .unwrap()
            }
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut s = tls.connect(name, tcp).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The gateway: a TLS data listener with `[decision]` for 127.0.0.1 (XFCC read), and routes for
/// each case: API keys with a minted token, a rate limit, a retired key (a plan in `enforce`),
/// mTLS, a webhook.
async fn lab() -> Lab {
    lab_with("").await
}

/// [`lab`] with more `[decision]` keys.
async fn lab_with(decision_extra: &str) -> Lab {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let corp = SpiffeCa::new("corp.example");
    let other = SpiffeCa::new("other.example");
    std::fs::write(dir.join("corp.pem"), corp.pem()).unwrap();
    std::fs::write(dir.join("other.pem"), other.pem()).unwrap();
    std::fs::write(dir.join("whsec"), format!("{WHSEC}\n")).unwrap();
    write_api_keys(
        dir,
        &[
            ("acme", ACME_ID, ACME),
            ("gone", "spiffe://corp.example/partner/gone", REVOKED),
        ],
    );
    std::fs::create_dir_all(dir.join("plans")).unwrap();
    std::fs::write(
        dir.join("plans/old-api.toml"),
        r#"name = "old-api"
owner = "team-partners <partners@corp.example>"
docs = "https://wiki.corp.example/migrations/old-api"
legacy_credentials = ["old-keys"]
[phases]
observe = 2025-01-01
bridge = 2025-02-01
enforce = 2025-03-01
[exit_criteria]
max_legacy_share = 0.01
window = "14d"
"#,
    )
    .unwrap();
    let up = Upstream::start().await;
    let u = up.url();
    let d = dir.display();
    let legacy = format!(
        "\n[[routes]]\nname = \"legacy\"\nmatch = {{ path_prefix = \"/legacy/\" }}\naccept = [\"old-keys\"]\n{ALLOW_PARTNERS}\nplan = \"old-api\"\n[routes.upstream]\nurl = \"{u}\"\naudience = \"legacy\"\n"
    );
    let extra = format!(
        r#"{ISSUER}
[decision]
path_prefix = "/.portcullis/decide"
trusted_proxies = ["127.0.0.1/32"]
client_cert_header = "x-forwarded-client-cert"
{decision_extra}
[migration]
plans_dir = "{d}/plans"

[trust."corp.example"]
x509_bundle = "{d}/corp.pem"
[trust."other.example"]
x509_bundle = "{d}/other.pem"

[credentials.partner-keys]
kind = "api-key"
keys_file = "{d}/keys.toml"

[credentials.old-keys]
kind = "api-key"
header = "X-Old-Key"
keys_file = "{d}/keys.toml"

[credentials.workload-mtls]
kind = "mtls"
trust_domains = ["corp.example"]

[credentials.billing-hooks]
kind = "webhook"
adapter = "standard-webhooks"
secrets_file = "{d}/whsec"
identity = "spiffe://corp.example/external/billing"
{partner}{rated}{legacy}
[[routes]]
name = "payments"
match = {{ path_prefix = "/payments/" }}
accept = ["workload-mtls"]
allow = ["spiffe://corp.example/ns/payments/*"]
[routes.upstream]
url = "{u}"
audience = "payments"

[[routes]]
name = "hooks"
match = {{ path_prefix = "/hooks/", methods = ["POST"] }}
accept = ["billing-hooks"]
allow = ["spiffe://corp.example/external/billing"]
[routes.upstream]
url = "{u}"
token_header = "none"
"#,
        partner = partner_route(
            "partner",
            r#"path_prefix = "/partner/""#,
            ALLOW_PARTNERS,
            &u,
            "",
            ""
        ),
        rated = partner_route(
            "rated",
            r#"path_prefix = "/rated/""#,
            ALLOW_PARTNERS,
            &u,
            "",
            "[routes.limits]\nrate = \"1/m\"\nburst = 1"
        ),
    );
    let toml = base_config(dir, "", &pki.tls_section(), &extra);
    let gw = start_in_process(dir, &toml).await;
    Lab {
        pki,
        corp,
        other,
        up,
        gw,
    }
}

fn claims(bearer: &str) -> Value {
    let token = bearer.strip_prefix("Bearer ").unwrap();
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

async fn problem(r: reqwest::Response) -> Value {
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{r:?}"
    );
    r.json().await.unwrap()
}

/// The cases both front proxies must get right, through `front`.
async fn through_front_proxy(lab: &Lab, front: &Front) {
    let c = reqwest::Client::new();
    let get = |path: &str, key: Option<(&str, &str)>| {
        let mut rb = c
            .get(front.url(path))
            // A header a legacy app would trust, and the decision headers, from the client.
            .header("x-remote-user", "admin")
            .header("x-original-uri", "/legacy/steal")
            .header("x-forwarded-uri", "/legacy/steal");
        if let Some((name, value)) = key {
            rb = rb.header(name, value);
        }
        rb.send()
    };
    let hits = lab.up.count();

    // A valid key: the upstream sees the minted token, never the key nor the claimed identity.
    let r = get("/partner/orders?page=2", Some(("x-api-key", ACME)))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = lab.up.last();
    assert_eq!(seen.path_and_query, "/partner/orders?page=2");
    assert!(
        seen.headers.get("x-api-key").is_none(),
        "{:?}",
        seen.headers
    );
    assert!(
        seen.headers.get("x-remote-user").is_none(),
        "{:?}",
        seen.headers
    );
    let token = claims(seen.headers["authorization"].to_str().unwrap());
    assert_eq!(token["sub"], ACME_ID);
    assert_eq!(token["aud"], "partner");
    assert_eq!(lab.up.count(), hits + 1);

    // A wrong key: 401 problem+json at the client, nothing upstream.
    let r = get("/partner/orders", Some(("x-api-key", "pcs_wrong_key_0000")))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        problem(r).await["type"],
        "urn:portcullis:invalid-credential"
    );
    // No key: 401 with the challenge.
    let r = get("/partner/orders", None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some(), "{r:?}");
    assert_eq!(problem(r).await["type"], "urn:portcullis:unauthenticated");
    // A revoked key.
    let r = get("/partner/orders", Some(("x-api-key", REVOKED)))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        problem(r).await["type"],
        "urn:portcullis:invalid-credential"
    );
    // A retired credential on an enforced route.
    let r = get("/legacy/report", Some(("x-old-key", ACME)))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        problem(r).await["type"],
        "urn:portcullis:legacy-credential-retired"
    );
    assert_eq!(lab.up.count(), hits + 1, "no refusal reached the upstream");

    // The rate limit: the second request is 429 with its headers, at the client.
    let r = get("/rated/x", Some(("x-api-key", ACME))).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(lab.up.last().headers.get("x-api-key").is_none());
    let r = get("/rated/x", Some(("x-api-key", ACME))).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some(), "{r:?}");
    assert_eq!(r.headers()["ratelimit-policy"], "\"identity\";q=1;w=60");
    assert!(
        r.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"identity\";r=0;t="),
        "{r:?}"
    );
    assert_eq!(problem(r).await["type"], "urn:portcullis:rate-limited");
    assert_eq!(lab.up.count(), hits + 2);
}

fn decision_lines(audit: &[Value]) -> Vec<&Value> {
    audit.iter().filter(|l| l["mode"] == "decision").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_in_front() {
    let lab = lab().await;
    let front = Front::nginx(lab.pki.dir.path(), &lab.gw_url(), &lab.up.url(), &lab.ca());
    lab.revoke("partner-keys:gone").await;
    through_front_proxy(&lab, &front).await;

    let audit = audit_lines(lab.pki.dir.path(), 7).await;
    let lines = decision_lines(&audit);
    assert_eq!(
        lines.len(),
        audit.len(),
        "every line is a decision: {audit:?}"
    );
    let first = lines[0];
    assert_eq!(first["path"], "/partner/orders?page=REDACTED");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["decision"], "allow");
    assert_eq!(first["identity"], ACME_ID);
    assert_eq!(first["source"].as_str().unwrap(), "127.0.0.1:0");
    assert!(first["jti"].as_str().is_some());
    let retired = lines
        .iter()
        .find(|l| l["reason"] == "legacy-credential-retired")
        .unwrap();
    assert_eq!(retired["plan"], "old-api");
    assert_eq!(retired["phase"], "enforce");
    assert_eq!(retired["path"], "/legacy/report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_in_front() {
    let lab = lab().await;
    let front = Front::caddy(lab.pki.dir.path(), &lab.gw_url(), &lab.up.url(), &lab.ca());
    lab.revoke("partner-keys:gone").await;
    through_front_proxy(&lab, &front).await;
    let audit = audit_lines(lab.pki.dir.path(), 7).await;
    assert_eq!(decision_lines(&audit).len(), audit.len(), "{audit:?}");

    // The inventory counts the decided caller like a proxied one.
    let r = reqwest::Client::new()
        .get(format!("http://{}/admin/v1/inventory", lab.gw.admin_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("partner-keys") && text.contains(ACME_ID),
        "{text}"
    );
}

/// Envoy's ext_authz HTTP service request: the original method, the path prefix followed by the
/// original path and query, `Host` the original authority, `Content-Length` the bytes sent, the
/// allowed headers as the client sent them (lower case, as Envoy writes them over HTTP/1.1).
fn envoy(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = format!(
        "{method} /.portcullis/decide{path} HTTP/1.1\r\nhost: api.corp.example\r\ncontent-length: {}\r\nx-envoy-expected-rq-timeout-ms: 500\r\nx-forwarded-proto: https\r\nx-request-id: 6c4e2b1a-0f3d-4e5b-9a8c-7d6e5f4a3b2c\r\nx-forwarded-for: 10.20.30.40\r\n",
        body.len()
    );
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("connection: close\r\n\r\n");
    r.push_str(body);
    r.into_bytes()
}

fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    let head = raw.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body_json(raw: &str) -> Value {
    serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

/// A Standard Webhooks signature (what the provider's SDK sends).
fn sign_webhook(id: &str, ts: u64, body: &str) -> String {
    use hmac::Mac as _;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(WHSEC.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_authz_requests() {
    let lab = lab().await;
    let hits = lab.up.count();

    // An API key: 200 with the token for `allowed_upstream_headers`, and the caller headers
    // proxy mode would strip named for removal.
    let raw = lab
        .raw(
            [127, 0, 0, 1],
            &envoy(
                "GET",
                "/partner/orders?page=2",
                &[("x-api-key", ACME), ("x-remote-user", "admin")],
                "",
            ),
        )
        .await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    let token = claims(header(&raw, "authorization").unwrap());
    assert_eq!(token["sub"], ACME_ID);
    assert_eq!(token["aud"], "partner");
    let mut removed: Vec<&str> = header(&raw, "x-envoy-auth-headers-to-remove")
        .unwrap()
        .split(',')
        .collect();
    removed.sort_unstable();
    assert_eq!(removed, ["x-api-key", "x-remote-user"]);
    assert_eq!(
        header(&raw, "x-request-id"),
        Some("6c4e2b1a-0f3d-4e5b-9a8c-7d6e5f4a3b2c")
    );
    // Refused: the same problem and headers as proxy mode.
    let raw = lab
        .raw(
            [127, 0, 0, 1],
            &envoy("DELETE", "/partner/orders/7", &[("x-api-key", "nope")], ""),
        )
        .await;
    assert_eq!(status_of(&raw), 401, "{raw}");
    assert_eq!(
        header(&raw, "content-type"),
        Some("application/problem+json")
    );
    assert_eq!(body_json(&raw)["type"], "urn:portcullis:invalid-credential");

    // A webhook with its body (`with_request_body`): the signature is checked on it.
    let body = r#"{"type":"invoice.paid","id":"evt_1"}"#;
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sig = sign_webhook("msg_1", ts, body);
    let ts_s = ts.to_string();
    let signed = [
        ("content-type", "application/json"),
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", ts_s.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    let raw = lab
        .raw(
            [127, 0, 0, 1],
            &envoy("POST", "/hooks/billing", &signed, body),
        )
        .await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    // Hostile twin: the same signature with a body the signature does not cover.
    let sig2 = sign_webhook("msg_2", ts, body);
    let tampered = [
        ("content-type", "application/json"),
        ("webhook-id", "msg_2"),
        ("webhook-timestamp", ts_s.as_str()),
        ("webhook-signature", sig2.as_str()),
    ];
    let raw = lab
        .raw(
            [127, 0, 0, 1],
            &envoy(
                "POST",
                "/hooks/billing",
                &tampered,
                r#"{"type":"invoice.paid","id":"evt_X"}"#,
            ),
        )
        .await;
    assert_eq!(status_of(&raw), 401, "{raw}");
    // Without the body (Envoy without with_request_body, or nginx): refused, and says why.
    let sig3 = sign_webhook("msg_3", ts, body);
    let bodiless = [
        ("content-type", "application/json"),
        ("webhook-id", "msg_3"),
        ("webhook-timestamp", ts_s.as_str()),
        ("webhook-signature", sig3.as_str()),
    ];
    let raw = lab
        .raw(
            [127, 0, 0, 1],
            &envoy("POST", "/hooks/billing", &bodiless, ""),
        )
        .await;
    assert_eq!(status_of(&raw), 400, "{raw}");
    assert!(
        body_json(&raw)["detail"]
            .as_str()
            .unwrap()
            .contains("needs the request body"),
        "{raw}"
    );
    // A body Envoy cut at max_request_bytes.
    let mut partial = signed.to_vec();
    partial.push(("x-envoy-auth-partial-body", "true"));
    let raw = lab
        .raw(
            [127, 0, 0, 1],
            &envoy("POST", "/hooks/billing", &partial, body),
        )
        .await;
    assert_eq!(status_of(&raw), 413, "{raw}");

    // The canonical view and its refusals are those of a direct request.
    let mut forwarded = 0;
    for path in [
        "/partner/orders",
        "/partner/a/../orders",
        "/partner/%2e%2e/legacy/x",
        "/partner%2forders",
        "/partner/a;jsessionid=1/b",
        "/partner//orders",
    ] {
        let direct = reqwest_status(&lab, path).await;
        if direct == 200 {
            forwarded += 1;
        }
        let raw = lab
            .raw(
                [127, 0, 0, 1],
                &envoy("GET", path, &[("x-api-key", ACME)], ""),
            )
            .await;
        assert_eq!(status_of(&raw), direct, "{path}: decision vs direct\n{raw}");
    }
    assert!(forwarded >= 1);
    assert_eq!(
        lab.up.count(),
        hits + forwarded,
        "only the direct requests went upstream"
    );

    let audit = audit_lines(lab.pki.dir.path(), 4).await;
    let first = &audit[0];
    assert_eq!(first["mode"], "decision");
    assert_eq!(first["source"], "10.20.30.40:0");
    assert_eq!(first["path"], "/partner/orders?page=REDACTED");
    assert!(audit.iter().any(|l| l["mode"] == "proxy"), "{audit:?}");
}

/// Status of the same path sent directly (proxy mode) with the partner key.
async fn reqwest_status(lab: &Lab, path: &str) -> u16 {
    let raw = lab
        .raw(
            [127, 0, 0, 1],
            format!(
                "GET {path} HTTP/1.1\r\nhost: localhost\r\nx-api-key: {ACME}\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    status_of(&raw)
}

fn xfcc_of(cert_pem: &str, chain_pem: Option<&str>, uri: &str) -> String {
    let enc = |s: &str| -> String { form_urlencoded::byte_serialize(s.as_bytes()).collect() };
    // Envoy percent-encodes the PEM; `+` in base64 must survive as `%2B`.
    let mut v = format!(
        "By=spiffe://corp.example/gateway;Hash=0;Cert=\"{}\"",
        enc(cert_pem).replace('+', "%20")
    );
    if let Some(chain) = chain_pem {
        v.push_str(&format!(";Chain=\"{}\"", enc(chain).replace('+', "%20")));
    }
    v.push_str(&format!(";Subject=\"CN=workload,O=x\";URI={uri}"));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfcc_certificates_are_validated_like_a_handshake() {
    let lab = lab().await;
    let ask = |xfcc: String| {
        let lab = &lab;
        async move {
            lab.raw(
                [127, 0, 0, 1],
                &envoy(
                    "GET",
                    "/payments/batch",
                    &[("x-forwarded-client-cert", xfcc.as_str())],
                    "",
                ),
            )
            .await
        }
    };

    // A valid SVID chain: accepted, and the minted token is bound to that certificate.
    let (cert, _key) = lab.corp.leaf(&[PAYMENTS_ID], |_| {});
    let raw = ask(xfcc_of(&cert, Some(&cert), PAYMENTS_ID)).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    let token = claims(header(&raw, "authorization").unwrap());
    assert_eq!(token["sub"], PAYMENTS_ID);
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    use rustls_pki_types::pem::PemObject as _;
    use sha2::Digest as _;
    let x5t =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der.as_ref()));
    assert_eq!(token["cnf"]["x5t#S256"], x5t);
    assert_eq!(token["amr"][0], "mtls");

    // A forged chain: the same SPIFFE ID, signed by a CA nobody trusts.
    let forger = SpiffeCa::new("corp.example");
    let (forged, _) = forger.leaf(&[PAYMENTS_ID], |_| {});
    let raw = ask(xfcc_of(&forged, None, PAYMENTS_ID)).await;
    assert_eq!(status_of(&raw), 401, "{raw}");
    assert_eq!(body_json(&raw)["type"], "urn:portcullis:invalid-credential");
    // Another trust domain's valid SVID: the bundle is known, the credential does not take it.
    let (foreign, _) = lab
        .other
        .leaf(&["spiffe://other.example/ns/payments/sa/batch"], |_| {});
    let raw = ask(xfcc_of(
        &foreign,
        None,
        "spiffe://other.example/ns/payments/sa/batch",
    ))
    .await;
    assert_eq!(status_of(&raw), 401, "{raw}");
    // A bare URI (what Envoy sends without `cert: true`): never a credential.
    let raw = ask(format!(
        "By=spiffe://corp.example/gateway;URI={PAYMENTS_ID}"
    ))
    .await;
    assert_eq!(status_of(&raw), 401, "{raw}");
    assert!(body_json(&raw)["detail"].as_str().unwrap().contains("URI="));
    // Two elements: the first could be the caller's own.
    let raw = ask(format!(
        "{},{}",
        xfcc_of(&forged, None, PAYMENTS_ID),
        xfcc_of(&cert, None, PAYMENTS_ID)
    ))
    .await;
    assert_eq!(status_of(&raw), 401, "{raw}");
    // An expired SVID.
    let (expired, _) = lab.corp.leaf(&[PAYMENTS_ID], |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let raw = ask(xfcc_of(&expired, None, PAYMENTS_ID)).await;
    assert_eq!(status_of(&raw), 401, "{raw}");
    assert_eq!(lab.up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trusted_proxies_may_describe_a_request() {
    let lab = lab().await;
    // 127.0.0.2 is outside trusted_proxies: a spoofed X-Forwarded-Uri is 403 and audited.
    let spoof = format!(
        "GET /.portcullis/decide HTTP/1.1\r\nhost: api.corp.example\r\nx-forwarded-method: GET\r\nx-forwarded-uri: /partner/orders\r\nx-forwarded-host: api.corp.example\r\nx-api-key: {ACME}\r\nconnection: close\r\n\r\n"
    );
    let raw = lab.raw([127, 0, 0, 2], spoof.as_bytes()).await;
    assert_eq!(status_of(&raw), 403, "{raw}");
    assert_eq!(body_json(&raw)["type"], "urn:portcullis:forbidden");
    assert!(header(&raw, "authorization").is_none());
    // Envoy's form from the same untrusted peer.
    let raw = lab
        .raw(
            [127, 0, 0, 2],
            &envoy("GET", "/partner/orders", &[("x-api-key", ACME)], ""),
        )
        .await;
    assert_eq!(status_of(&raw), 403, "{raw}");
    // The same request from the trusted proxy: allowed.
    let raw = lab.raw([127, 0, 0, 1], spoof.as_bytes()).await;
    assert_eq!(status_of(&raw), 200, "{raw}");

    // From the trusted proxy, a description that could be read two ways is refused.
    let twice = |extra: &str| {
        format!(
            "GET /.portcullis/decide HTTP/1.1\r\nhost: api.corp.example\r\nx-forwarded-method: GET\r\n{extra}x-api-key: {ACME}\r\nconnection: close\r\n\r\n"
        )
    };
    for extra in [
        "x-forwarded-uri: /partner/a\r\nx-original-uri: /legacy/b\r\n",
        "x-forwarded-uri: /partner/a\r\nx-forwarded-uri: /legacy/b\r\n",
        "x-forwarded-uri: https://evil.example/partner/a\r\n",
        "",
    ] {
        let raw = lab.raw([127, 0, 0, 1], twice(extra).as_bytes()).await;
        assert_eq!(status_of(&raw), 400, "{extra:?}\n{raw}");
    }
    let raw = lab
        .raw(
            [127, 0, 0, 1],
            &envoy(
                "GET",
                "/partner/a",
                &[("x-api-key", ACME), ("x-forwarded-uri", "/legacy/b")],
                "",
            ),
        )
        .await;
    assert_eq!(status_of(&raw), 400, "{raw}");
    // Without a method the policy cannot be decided.
    let raw = lab
        .raw(
            [127, 0, 0, 1],
            format!("GET /.portcullis/decide HTTP/1.1\r\nhost: a\r\nx-forwarded-uri: /partner/a\r\nx-api-key: {ACME}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await;
    assert_eq!(status_of(&raw), 400, "{raw}");
    assert_eq!(lab.up.count(), 0, "a decision never reaches the upstream");

    let audit = audit_lines(lab.pki.dir.path(), 3).await;
    let refused = &audit[0];
    assert_eq!(refused["mode"], "decision");
    assert_eq!(refused["status"], 403);
    assert_eq!(refused["reason"], "forbidden");
    assert!(refused["source"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.2:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_ids_need_the_proxys_own_svid() {
    let lab = lab_with(r#"trusted_proxy_ids = ["spiffe://corp.example/ingress/*"]"#).await;
    let ask = envoy("GET", "/partner/orders", &[("x-api-key", ACME)], "");
    let ingress = lab
        .corp
        .leaf(&["spiffe://corp.example/ingress/nginx"], |_| {});
    let raw = lab.raw_as([127, 0, 0, 1], Some(&ingress), &ask).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    // From a trusted address, but without a certificate, or with another workload's.
    let raw = lab.raw_as([127, 0, 0, 1], None, &ask).await;
    assert_eq!(status_of(&raw), 403, "{raw}");
    let stranger = lab.corp.leaf(&[PAYMENTS_ID], |_| {});
    let raw = lab.raw_as([127, 0, 0, 1], Some(&stranger), &ask).await;
    assert_eq!(status_of(&raw), 403, "{raw}");
    // The right ID from an untrusted address.
    let raw = lab.raw_as([127, 0, 0, 2], Some(&ingress), &ask).await;
    assert_eq!(status_of(&raw), 403, "{raw}");
    // The proxy's own certificate is never the caller's: an mTLS route without a forwarded
    // certificate is 401, even though the proxy's SVID is valid and in corp.example.
    let payments = envoy("GET", "/payments/batch", &[], "");
    let raw = lab.raw_as([127, 0, 0, 1], Some(&ingress), &payments).await;
    assert_eq!(status_of(&raw), 401, "{raw}");
    assert_eq!(lab.up.count(), 0);
}

#[test]
fn decision_config_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let check = |decision: &str| -> String {
        let toml = base_config(dir.path(), "", "", &format!("\n[decision]\n{decision}\n"));
        let path = dir.path().join("portcullis.toml");
        std::fs::write(&path, toml).unwrap();
        match portcullis::config::load(&path) {
            Ok(c) => format!("ok {:?}", c.warnings),
            Err(e) => e.to_string(),
        }
    };
    assert!(check("trusted_proxies = [\"10.0.0.0/8\"]").starts_with("ok"));
    let out = std::process::Command::new(bin())
        .args(["check", "-c"])
        .arg(dir.path().join("portcullis.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("decide  /.portcullis/decide from 10.0.0.0/8"),
        "{out:?}"
    );
    assert!(check("").contains("decision.trusted_proxies: required"));
    assert!(check("trusted_proxies = []").contains("decision.trusted_proxies: empty"));
    let e = check("trusted_proxies = [\"10.0.0.1/8\"]");
    assert!(e.contains("host bits") && e.contains("10.0.0.0/8"), "{e}");
    assert!(check("trusted_proxies = [\"localhost\"]").contains("decision.trusted_proxies[0]"));
    assert!(check("trusted_proxies = [\"0.0.0.0/0\"]").contains("trusts every address"));
    for bad in [
        "\"decide\"",
        "\"/\"",
        "\"/a/\"",
        "\"/a/../b\"",
        "\"/a;b\"",
        "\"/a%2f\"",
    ] {
        let e = check(&format!("path_prefix = {bad}\ntrusted_proxies = [\"::1\"]"));
        assert!(e.contains("decision.path_prefix"), "{bad}: {e}");
    }
    let e = check("trusted_proxies = [\"::1\"]\ntrusted_proxy_ids = [\"spiffe://corp.example/x\"]");
    assert!(
        e.contains("decision.trusted_proxy_ids") && e.contains("listen.tls"),
        "{e}"
    );
    let e = check("trusted_proxies = [\"::1\"]\nclient_cert_header = \"bad header\"");
    assert!(e.contains("decision.client_cert_header"), "{e}");
    assert!(check("trusted_proxies = [\"::1\"]\ntrusted = 1").contains("decision"));
}
